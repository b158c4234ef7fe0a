"""The client SDK: httpx auth that refreshes silently, DPoP proofs, safe token storage."""
