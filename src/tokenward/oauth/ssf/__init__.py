"""Continuous access evaluation: the OpenID Shared Signals Framework 1.0 transmitter (stream
management, Security Event Tokens with CAEP events, push and poll delivery) and OpenID
Back-Channel Logout 1.0. Protocol core only: no web framework, storage through ports."""
