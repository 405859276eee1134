//! What planning a long list of selectors with patterns costs in memory: a
//! list is untrusted input, and a few KiB of it must not take hundreds of
//! MiB. Its own test binary, as the counting allocator is global.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ecr_cache_warmer::plan::plan;
use ecr_cache_warmer::rules::Rules;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counts are the process's: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// What `work` allocates at its peak, and what it still holds after.
fn measure<T>(work: impl FnOnce() -> T) -> (T, usize, usize) {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = work();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let kept = IN_USE.load(Ordering::Relaxed).saturating_sub(before);
    (value, peak, kept)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// 300 selectors as a user might paste them: a few repositories and ranges,
/// each with a pattern of `\w` classes, some patterns repeated.
fn selectors() -> Vec<String> {
    let repositories = ["nginx", "redis", "quay.io/prometheus/node-exporter"];
    (0..300)
        .map(|i| {
            let repository = repositories[i % repositories.len()];
            let width = 16 + i % 10;
            match i % 3 {
                0 => format!(r"{repository}:~1.{} match=\w{{{width}}}", 20 + i % 8),
                1 => format!(
                    r"{repository}:>=1.{} match=^\w{{{width}}}$ newest=2",
                    i % 30
                ),
                _ => format!(r"{repository}:match=\w{{20}} exclude=\w+-rc\d+"),
            }
        })
        .collect()
}

#[test]
fn three_hundred_selectors_with_patterns_plan_in_a_few_mib() {
    let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io", "quay=quay.io"]).unwrap();
    let entries = selectors();
    assert!(entries.iter().map(String::len).sum::<usize>() < 12 * 1024);

    let (planned, peak, kept) = measure(|| plan(&entries, &rules));
    println!(
        "planning {} selectors: peak {:.1} MiB, kept {:.1} MiB",
        entries.len(),
        mib(peak),
        mib(kept)
    );

    assert_eq!(planned.len(), 300);
    assert!(
        planned.iter().all(|image| image.error.is_none()),
        "{:?}",
        planned.iter().find_map(|image| image.error.as_deref())
    );
    assert!(peak < 16 << 20, "planning took a peak of {peak} bytes");
    assert!(kept < 8 << 20, "the plan keeps {kept} bytes");
}

#[test]
fn distinct_patterns_that_turn_unicode_back_on_stay_bounded() {
    let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
    let entries: Vec<String> = (0..300)
        .map(|i| format!(r"nginx:match=(?u)\w{{{}}}", 1 + i % 30) + &"x".repeat(i / 30))
        .collect();
    let (planned, peak, _) = measure(|| plan(&entries, &rules));
    println!(
        "planning {} distinct Unicode patterns: peak {:.1} MiB",
        entries.len(),
        mib(peak)
    );
    assert_eq!(planned.len(), 300);
    assert!(peak < 48 << 20, "planning took a peak of {peak} bytes");
}
