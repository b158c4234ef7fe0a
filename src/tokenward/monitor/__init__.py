"""Usage monitoring: usage events → windows → detectors → alerts and automatic responses.

What producers emit (`core.events`) is in the bottom layer, so the gateway and the protocol
core emit without importing this package; `pipeline.Monitor` ties the rest together. Nothing is
re-exported here, so importing this package never imports the whole pipeline.
"""
