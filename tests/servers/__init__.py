"""Real HTTP servers on loopback that speak providers' documented wire formats, for adapter tests."""
