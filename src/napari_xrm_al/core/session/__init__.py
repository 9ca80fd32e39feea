"""The project folder beside a scan: the session and its schema, paint, lock, and the jobs (pretrain, train, predict) run on it."""
