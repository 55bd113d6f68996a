"""Sub-agents: planning a task into reserved shares, and running the shares against provider APIs."""
