"""paasport.api."""
