# The seeds' RabbitMQ consumer, unchanged: prints every message of the queue
# `hello` of the broker on localhost. With `shmring bridge out --local hello
# --queue hello` running, it prints what Rust (or Python) processes send into
# the local shmring queue `hello` (see bridge/examples/hello_send.rs).
import pika
connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()
channel.queue_declare(queue='hello')
def callback(ch, method, properties, body):
    print(" [x] Received %r" % body)
channel.basic_consume(queue='hello', on_message_callback=callback)
print(' [*] Waiting for messages. To exit press CTRL+C')
channel.start_consuming()
