//! Encode + decode of one `anomaly_core::Sample` (host name, timestamp, 7 metrics), JSON beside
//! postcard. Run: `cargo bench -p anomaly-benches --bench codec`.

use anomaly_core::Sample;
use anomaly_stream::{Codec, JsonCodec, PostcardCodec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let sample = Sample::new(
        "web-042.example.net",
        1_700_000_000_123,
        vec![37.5, 61.25, 1.72, 123_456.0, 654_321.0, 1.5e6, 2.25e6],
    );
    let mut group = c.benchmark_group("sample_codec");
    group.throughput(Throughput::Elements(1));
    let codecs: [(&str, Box<dyn Codec<Sample>>); 2] = [
        ("json", Box::new(JsonCodec)),
        ("postcard", Box::new(PostcardCodec)),
    ];
    for (name, codec) in &codecs {
        let mut buf = Vec::new();
        codec.encode(&sample, &mut buf).unwrap();
        eprintln!("{name}: {} bytes per sample", buf.len());
        group.bench_function(format!("{name}_encode_decode"), |b| {
            b.iter(|| {
                buf.clear();
                codec.encode(black_box(&sample), &mut buf).unwrap();
                black_box(codec.decode(&buf).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
