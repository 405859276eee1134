//! A stand-in SQS queue: SendMessageBatch answered entry by entry.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, SendMessageBatchRequestEntry, SendMessageBatchResultEntry,
};
use aws_smithy_mocks::{mock, mock_client, RuleMode};

/// A stand-in queue for tests: `answer` sees each entry of each
/// SendMessageBatch call (with the call's number, from 0) and refuses it with
/// `Some(sender_fault)`; every other entry is taken.
pub fn test_queue(
    answer: impl Fn(usize, &SendMessageBatchRequestEntry) -> Option<bool> + Send + Sync + 'static,
) -> aws_sdk_sqs::Client {
    let calls = AtomicUsize::new(0);
    let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_compute_output(move |req| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        let mut output = SendMessageBatchOutput::builder()
            .set_failed(Some(Vec::new()))
            .set_successful(Some(Vec::new()));
        for entry in req.entries() {
            output = match answer(call, entry) {
                Some(sender_fault) => output.failed(
                    BatchResultErrorEntry::builder()
                        .id(entry.id())
                        .sender_fault(sender_fault)
                        .code("InternalError")
                        .message("try again")
                        .build()
                        .unwrap(),
                ),
                None => output.successful(
                    SendMessageBatchResultEntry::builder()
                        .id(entry.id())
                        .message_id(format!("m-{}", entry.id()))
                        .md5_of_message_body("x")
                        .build()
                        .unwrap(),
                ),
            };
        }
        output.build().unwrap()
    });
    mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule])
}
