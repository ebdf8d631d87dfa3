"""Stand-ins for the outside world that tests control: the scripted LLM and its scripts."""
