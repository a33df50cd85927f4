//! kappa-source-replay
