"""Sites and their credentials on the broker: NATS operator, account and user JWTs, each site's
user allowed its own subjects only, rotated and revoked on the running broker."""
