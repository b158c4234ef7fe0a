"""Usage monitoring: usage events → windows → detectors → alerts and automatic responses.

`events` (what producers emit) imports nothing else of tokenward's, so the gateway and the
protocol core may import it freely; `pipeline.Monitor` ties the rest together. Nothing is
re-exported here, so importing this package never imports the whole pipeline.
"""
