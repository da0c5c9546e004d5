//! Throughput benchmark.
