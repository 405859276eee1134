//! Stand-ins for the services the tests talk to, shared by the tests of every
//! module: the SQS queue, ECR's answers and an upstream registry.

pub mod ecr;
pub mod json;
pub mod queue;
pub mod upstream;
