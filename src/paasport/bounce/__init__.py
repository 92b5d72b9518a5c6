"""paasport.bounce."""
