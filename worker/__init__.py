"""seasync workers: the Producer base class, producer discovery, worker processes and their pool."""
