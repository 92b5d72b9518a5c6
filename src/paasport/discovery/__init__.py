"""paasport.discovery."""
