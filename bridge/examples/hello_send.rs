//! The seeds' "hello" producer on the shmring side: sends `Hello World!`
//! into the local queue `hello` (or the name given), which `shmring bridge
//! out --local hello --queue hello` carries to the RabbitMQ queue `hello`,
//! where the seeds' pika consumer (`examples/python/rabbitmq/receive.py`)
//! prints it.
//!
//! ```text
//! shmring bridge out --local hello --queue hello &
//! cargo run -p shmring-bridge --example hello_send
//! python examples/python/rabbitmq/receive.py
//! ```

use shmring::{ByteQueue, Flavor};
use shmring_bridge::LocalQueue;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "hello".into());
    // The bridge's local queue: opened if the bridge made it, else made
    // with the bridge's defaults (the bridge then opens this one).
    let queue = ByteQueue::builder()
        .flavor(Flavor::Mpmc)
        .capacity(LocalQueue::DEFAULT_CAPACITY)
        .max_message_size(LocalQueue::DEFAULT_MAX_MESSAGE_SIZE)
        .open_or_create(&name)?;
    queue.sender()?.send(b"Hello World!")?;
    println!(" [x] Sent 'Hello World!'");
    Ok(())
}
