# The seeds' RabbitMQ producer, unchanged: publishes 'Hello World!' to the
# queue `hello` of the broker on localhost. With `shmring bridge in --queue
# hello --local hello` running, the message lands in the local shmring
# queue `hello` (see bridge/examples/hello_receive.rs and docs/multihost.md).
import pika
connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
channel = connection.channel()
channel.queue_declare(queue='hello')
channel.basic_publish(exchange='', routing_key='hello', body='Hello World!')
print(" [x] Sent 'Hello World!'")
connection.close()
