"""The pages people use (the customer's account and privacy centre, the staff console) and the
edge that serves them beside the services' APIs on one origin."""
