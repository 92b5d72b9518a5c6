"""paasport.cli."""
