"""Scripts run by path inside kernel processes; they import nothing from ductaflow."""
