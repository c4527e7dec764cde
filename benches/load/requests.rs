//! The requests the load generator sends, built once as raw HTTP/1.1 bytes.

use bytes::Bytes;

pub fn get_req(path: &str) -> Bytes {
    Bytes::from(format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: llmgate-loadbench\r\nAccept: */*\r\n\r\n"
    ))
}

pub fn post_req(path: &str, accept: &str, body: &[u8]) -> Bytes {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: llmgate-loadbench\r\n\
         Content-Type: application/json\r\nAccept: {accept}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// A streaming chat request: the mock sends `chunks` SSE chunks `gap_ms` apart.
pub fn sse_req(chunks: u64, gap_ms: u64) -> Bytes {
    post_req(
        &format!("/api/chat/completions?chunks={chunks}&gap_ms={gap_ms}"),
        "text/event-stream",
        &chat_body(true),
    )
}

/// A ~1 KiB OpenAI chat request body.
pub fn chat_body(stream: bool) -> Vec<u8> {
    let head = format!(
        "{{\"model\":\"model-0\",\"stream\":{stream},\"temperature\":0.7,\"messages\":[\
         {{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},\
         {{\"role\":\"user\",\"content\":\""
    );
    let tail = "\"}]}";
    let mut s = head;
    let words = [
        "lorem ",
        "ipsum ",
        "dolor ",
        "sit ",
        "amet ",
        "consectetur ",
    ];
    let mut k = 0;
    while s.len() + tail.len() < 1024 {
        s.push_str(words[k % words.len()]);
        k += 1;
    }
    s.push_str(tail);
    s.into_bytes()
}
