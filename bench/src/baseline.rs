//! The baseline: RabbitMQ's own publish-and-consume rate on this machine, measured with the
//! same message shape (persistent, ~1 KiB, publisher confirms, manual acks, quorum queue).

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::time::Instant;

/// Messages per second for `n` messages published (pipelined confirms) and consumed (acked)
/// at the same time through one quorum queue.
pub async fn publish_consume_rate(url: &str, n: u64) -> anyhow::Result<f64> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let pubch = conn.create_channel().await?;
    let subch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let q = "bench.baseline";
    pubch.queue_declare(q.into(), QueueDeclareOptions { durable: true, ..Default::default() }, args).await?;
    pubch.confirm_select(ConfirmSelectOptions::default()).await?;
    subch.basic_qos(256, BasicQosOptions::default()).await?;
    let mut consumer =
        subch.basic_consume(q.into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    let body = vec![b'x'; 1024];
    let start = Instant::now();
    let consume = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            let Some(Ok(d)) = consumer.next().await else { break };
            d.ack(BasicAckOptions::default()).await?;
            got += 1;
        }
        anyhow::Ok(got)
    });
    let mut confirms = Vec::with_capacity(1000);
    for _ in 0..n {
        let props = BasicProperties::default().with_delivery_mode(2);
        confirms.push(pubch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), &body, props).await?);
        if confirms.len() == 1000 {
            for c in confirms.drain(..) {
                c.await?;
            }
        }
    }
    for c in confirms {
        c.await?;
    }
    let got = consume.await??;
    let secs = start.elapsed().as_secs_f64();
    pubch.queue_delete(q.into(), QueueDeleteOptions::default()).await?;
    conn.close(200, "".into()).await?;
    anyhow::ensure!(got == n, "consumed {got} of {n}");
    Ok(n as f64 / secs)
}
