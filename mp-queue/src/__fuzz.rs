//! Entry points for `mp-fuzz` (not part of the API).
