"""`python -m bench` (make bench): this project's observability against its peers, side by side.

See bench/README.md for what is measured and how; results go to bench/results/.
"""
