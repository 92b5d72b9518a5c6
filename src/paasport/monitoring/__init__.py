"""paasport.monitoring."""
