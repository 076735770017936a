"""All printing: the reporter (human lines, progress, JSON) and tables."""
