//! kappa-logic
