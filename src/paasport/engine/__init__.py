"""paasport.engine."""
