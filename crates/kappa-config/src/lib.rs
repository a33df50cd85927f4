//! kappa-config
