"""Publish: receive builds from workers (the intake) and write the static index in www/."""
