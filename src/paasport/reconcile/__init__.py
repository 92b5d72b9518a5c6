"""paasport.reconcile."""
