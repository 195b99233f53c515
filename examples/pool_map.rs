//! The seed's process pool, `concurrent.futures.ProcessPoolExecutor().map`:
//!
//! ```python
//! def worker(data):
//!     return data * data
//! if __name__ == '__main__':
//!     with concurrent.futures.ProcessPoolExecutor() as executor:
//!         results = list(executor.map(worker, [1, 2, 3, 4, 5]))
//!     print(results)
//! ```
//!
//! Prints `[1, 4, 9, 16, 25]`. The workers are this program re-executed:
//! `pool::init` at the top of `main` runs them.
//!
//! ```sh
//! cargo run --example pool_map --features serde
//! ```

use shmring::pool::{self, Task};
use shmring::Pool;

fn worker(data: i64) -> i64 {
    data * data
}

static WORKER: Task<i64, i64> = Task::new("worker", worker);

fn main() -> Result<(), shmring::PoolError> {
    pool::init(&[&WORKER]);
    let results = {
        let executor = Pool::new()?;
        executor.map(&WORKER, [1, 2, 3, 4, 5])?
    }; // the pool is dropped: its workers are shut down and reaped
    println!("{results:?}");
    Ok(())
}
