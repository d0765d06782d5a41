"""Message transports behind one interface (``base.Bus``): memory here, NATS JetStream at scale."""
