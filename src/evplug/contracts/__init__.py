"""The wire contract: protobuf messages, bus subjects and the gzip framing around them."""
