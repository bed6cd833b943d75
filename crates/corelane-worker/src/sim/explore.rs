//! Exploration modes: seeded random choices, PCT, bounded exhaustive search, and replay.

use std::fmt::{self, Debug};
use std::ops::Range;

use super::engine::{Action, End, Engine};
use super::{Rng, Sim};
use crate::Worker;

/// One completed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Schedule {
    /// The choice at every step: the index of the step taken among those enabled.
    pub choices: Vec<usize>,
    /// Steps taken.
    pub steps: u64,
}

/// What an exploration covered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Schedules run, every one passing.
    pub schedules: u64,
    /// Steps over all of them.
    pub steps: u64,
    /// Exhaustive mode: whether every schedule was covered (`false`: the bound stopped it).
    pub complete: bool,
}

/// A schedule that broke an invariant: what, and how to see it again.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// What went wrong (a client's panic message, an unbalanced report, a stuck client, ...).
    pub message: String,
    /// The seed of a random or PCT schedule (`CORELANE_SIM_SEED=<seed>` replays it).
    pub seed: Option<u64>,
    /// The choice string ([`Sim::replay`] replays it).
    pub choices: Vec<usize>,
    /// Every step, readable.
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulated schedule failed: {}", self.message)?;
        if let Some(seed) = self.seed {
            writeln!(f, "replay: CORELANE_SIM_SEED={seed}")?;
        }
        let choices: Vec<String> = self.choices.iter().map(|c| c.to_string()).collect();
        writeln!(f, "choices: [{}]", choices.join(","))?;
        writeln!(f, "trace:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

/// Picks the step to take among those enabled.
enum Chooser {
    Random(Rng),
    Pct(Pct),
    /// Takes `prefix` first, then always the first enabled step.
    Replay(Vec<usize>),
}

impl Chooser {
    fn choose(&mut self, step: usize, enabled: &[Action], counts: (usize, usize)) -> usize {
        match self {
            Chooser::Random(rng) => rng.below(enabled.len()),
            Chooser::Pct(p) => p.choose(step, enabled, counts),
            Chooser::Replay(prefix) => prefix
                .get(step)
                .copied()
                .unwrap_or(0)
                .min(enabled.len() - 1),
        }
    }
}

/// Probabilistic concurrency testing (Burckhardt et al.): every actor gets a random priority,
/// the highest-priority enabled actor runs, and at `depth - 1` random steps the running actor
/// drops to the lowest priority. A bug of depth `d` is found with probability at least
/// `1 / (n * k^(d-1))` per schedule.
struct Pct {
    rng: Rng,
    priorities: Vec<u64>,
    change_points: Vec<usize>,
    lowest: u64,
}

impl Pct {
    fn new(seed: u64, depth: usize, actors: usize, steps: usize) -> Self {
        let mut rng = Rng::new(seed);
        let mut priorities: Vec<u64> = (0..actors as u64).map(|p| p + depth as u64).collect();
        for i in (1..priorities.len()).rev() {
            let j = rng.below(i + 1);
            priorities.swap(i, j);
        }
        let change_points = (1..depth).map(|_| rng.below(steps.max(1))).collect();
        Self {
            rng,
            priorities,
            change_points,
            lowest: depth as u64,
        }
    }

    fn choose(
        &mut self,
        step: usize,
        enabled: &[Action],
        (clients, workers): (usize, usize),
    ) -> usize {
        let actor = |a: &Action| a.actor(clients, workers);
        let top = enabled
            .iter()
            .map(|a| self.priorities[actor(a)])
            .max()
            .expect("a choice has options");
        let candidates: Vec<usize> = (0..enabled.len())
            .filter(|&i| self.priorities[actor(&enabled[i])] == top)
            .collect();
        let pick = candidates[self.rng.below(candidates.len())];
        if self.change_points.contains(&step) {
            self.lowest -= 1;
            self.priorities[actor(&enabled[pick])] = self.lowest;
        }
        pick
    }
}

/// What one schedule came to: how it ended, its steps and, per step, the choice and how many
/// steps were enabled.
struct Run {
    end: End,
    steps: u64,
    choices: Vec<(usize, usize)>,
}

impl<W: Worker> Sim<W>
where
    W::Message: Debug,
{
    fn run(
        &self,
        chooser: &mut Chooser,
        seed: u64,
        faults: bool,
        trace: bool,
    ) -> (Run, Vec<String>) {
        let mut engine = match Engine::new(self, seed, faults, trace) {
            Ok(e) => e,
            Err(e) => {
                let run = Run {
                    end: End::Failed(e),
                    steps: 0,
                    choices: Vec::new(),
                };
                return (run, Vec::new());
            }
        };
        let counts = engine.counts();
        let mut enabled = Vec::new();
        let mut choices = Vec::new();
        let end = loop {
            engine.enabled(&mut enabled);
            if enabled.is_empty() {
                match engine.idle() {
                    Some(end) => break end,
                    None => continue,
                }
            }
            let pick = chooser.choose(choices.len(), &enabled, counts);
            choices.push((pick, enabled.len()));
            if let Err(e) = engine.step(enabled[pick]) {
                break End::Failed(e);
            }
        };
        let steps = engine.clock();
        let trace = engine.trace();
        (
            Run {
                end,
                steps,
                choices,
            },
            trace,
        )
    }

    /// A failure found by `chooser`'s schedule, with the trace of a rerun.
    fn failure(
        &self,
        message: String,
        seed: Option<u64>,
        choices: &[(usize, usize)],
        faults: bool,
    ) -> Failure {
        let picks: Vec<usize> = choices.iter().map(|c| c.0).collect();
        let mut replay = Chooser::Replay(picks.clone());
        let (_, trace) = self.run(&mut replay, seed.unwrap_or(0), faults, true);
        Failure {
            message,
            seed,
            choices: picks,
            trace,
        }
    }

    /// The seeds to run: `seeds`, or only `CORELANE_SIM_SEED` when it is set.
    fn seeds(seeds: Range<u64>) -> Range<u64> {
        match std::env::var("CORELANE_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(seed) => seed..seed + 1,
            None => seeds,
        }
    }

    /// Runs the schedule of `seed` with random choices and the configured faults.
    ///
    /// # Errors
    /// The [`Failure`] if the schedule breaks an invariant.
    pub fn run_seed(&self, seed: u64) -> Result<Schedule, Failure> {
        let (run, _) = self.run(&mut Chooser::Random(Rng::new(seed)), seed, true, false);
        match run.end {
            End::Done => Ok(Schedule {
                choices: run.choices.iter().map(|c| c.0).collect(),
                steps: run.steps,
            }),
            End::Failed(message) => Err(self.failure(message, Some(seed), &run.choices, true)),
        }
    }

    /// Runs one random schedule per seed of `seeds` (only `CORELANE_SIM_SEED` if set).
    ///
    /// # Errors
    /// The first [`Failure`].
    pub fn random(&self, seeds: Range<u64>) -> Result<Summary, Failure> {
        let mut summary = Summary {
            schedules: 0,
            steps: 0,
            complete: true,
        };
        for seed in Self::seeds(seeds) {
            let s = self.run_seed(seed)?;
            summary.schedules += 1;
            summary.steps += s.steps;
        }
        Ok(summary)
    }

    /// Runs one PCT schedule of depth `depth` per seed of `seeds` (only `CORELANE_SIM_SEED` if
    /// set), with the configured faults.
    ///
    /// # Errors
    /// The first [`Failure`].
    pub fn pct(&self, depth: usize, seeds: Range<u64>) -> Result<Summary, Failure> {
        // The change points are spread over the length of a typical schedule.
        let (probe, _) = self.run(&mut Chooser::Random(Rng::new(0)), 0, true, false);
        let steps = probe.steps.max(1) as usize;
        let mut summary = Summary {
            schedules: 0,
            steps: 0,
            complete: true,
        };
        for seed in Self::seeds(seeds) {
            let (clients, workers) = (self.clients.len(), self.workers);
            let mut chooser =
                Chooser::Pct(Pct::new(seed, depth.max(1), clients + 2 * workers, steps));
            let (run, _) = self.run(&mut chooser, seed, true, false);
            if let End::Failed(message) = run.end {
                return Err(self.failure(message, Some(seed), &run.choices, true));
            }
            summary.schedules += 1;
            summary.steps += run.steps;
        }
        Ok(summary)
    }

    /// Runs every schedule (depth first, without faults), up to `max_schedules`.
    ///
    /// # Errors
    /// The first [`Failure`].
    pub fn exhaustive(&self, max_schedules: u64) -> Result<Summary, Failure> {
        let mut summary = Summary {
            schedules: 0,
            steps: 0,
            complete: false,
        };
        let mut prefix: Vec<usize> = Vec::new();
        while summary.schedules < max_schedules {
            let (run, _) = self.run(&mut Chooser::Replay(prefix.clone()), 0, false, false);
            if let End::Failed(message) = run.end {
                return Err(self.failure(message, None, &run.choices, false));
            }
            summary.schedules += 1;
            summary.steps += run.steps;
            // The next schedule: the deepest step with an untried alternative takes it.
            let Some(i) = run.choices.iter().rposition(|&(pick, n)| pick + 1 < n) else {
                summary.complete = true;
                break;
            };
            prefix = run.choices[..i].iter().map(|c| c.0).collect();
            prefix.push(run.choices[i].0 + 1);
        }
        Ok(summary)
    }

    /// Replays a choice string (from a [`Failure`] or a [`Schedule`]), without faults.
    ///
    /// # Errors
    /// The [`Failure`] if the schedule breaks an invariant.
    pub fn replay(&self, choices: &[usize]) -> Result<Schedule, Failure> {
        let (run, _) = self.run(&mut Chooser::Replay(choices.to_vec()), 0, false, false);
        match run.end {
            End::Done => Ok(Schedule {
                choices: run.choices.iter().map(|c| c.0).collect(),
                steps: run.steps,
            }),
            End::Failed(message) => Err(self.failure(message, None, &run.choices, false)),
        }
    }

    /// The readable trace of the random schedule of `seed` (with the configured faults): the
    /// same on every call.
    pub fn trace(&self, seed: u64) -> Vec<String> {
        self.run(&mut Chooser::Random(Rng::new(seed)), seed, true, true)
            .1
    }
}
