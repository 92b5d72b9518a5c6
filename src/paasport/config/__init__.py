"""paasport.config."""
