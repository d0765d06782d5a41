"""The relay manager: the edge agent on the site LAN that polls relays and switches them."""
