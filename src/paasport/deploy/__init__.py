"""paasport.deploy."""
