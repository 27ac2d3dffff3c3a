//! Redis session store and keyspace-expiry listener (being written).
