//! placeholder: being written (helper-3 replaces this file).
