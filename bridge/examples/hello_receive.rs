//! The seeds' "hello" consumer on the shmring side: receives from the local
//! queue `hello` (or the name given) what `shmring bridge in --queue hello
//! --local hello` brings from the RabbitMQ queue `hello`, where the seeds'
//! pika producer (`examples/python/rabbitmq/send.py`) published it, and
//! prints each message. `--count N` stops after N messages.
//!
//! ```text
//! shmring bridge in --queue hello --local hello &
//! cargo run -p shmring-bridge --example hello_receive -- hello --count 1 &
//! python examples/python/rabbitmq/send.py
//! ```

use shmring::{ByteQueue, Flavor};
use shmring_bridge::LocalQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "hello".into());
    let count = match args.iter().position(|a| a == "--count") {
        Some(i) => Some(
            args.get(i + 1)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or("--count takes a number")?,
        ),
        None => None,
    };
    let queue = ByteQueue::builder()
        .flavor(Flavor::Mpmc)
        .capacity(LocalQueue::DEFAULT_CAPACITY)
        .max_message_size(LocalQueue::DEFAULT_MAX_MESSAGE_SIZE)
        .open_or_create(&name)?;
    let mut rx = queue.receiver()?;
    // The bridge (the sender) may start after this program, or restart:
    // wait for it instead of taking "no sender" as the end of the stream.
    rx.set_wait_for_senders(true);
    println!(" [*] Waiting for messages in {name}. To exit press CTRL+C");
    let mut got = 0;
    while count.is_none_or(|n| got < n) {
        let msg = rx.recv()?;
        println!(" [x] Received '{}'", String::from_utf8_lossy(&msg));
        got += 1;
    }
    Ok(())
}
