"""The front door: a CDN-like proxy that routes by the lab's DNS record."""
