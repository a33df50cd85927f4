//! kappa-synth
