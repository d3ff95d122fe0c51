"""CloudFormation stacks: each wires constructs and settings into one deployable unit."""
