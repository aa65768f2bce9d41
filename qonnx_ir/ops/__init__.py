"""One module per hardware-dialect op: its attributes, type rules, exact semantics and cost."""
