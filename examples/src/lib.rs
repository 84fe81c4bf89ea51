//! Example workflows for reprise.
