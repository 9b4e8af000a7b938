"""One router per resource, mounted in service.main."""
