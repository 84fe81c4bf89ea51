//! `book-trip`: a recorded retry, then a compensation.

use reprise::RunOutcome;
use reprise::event::{EventKind, RunStatus};
use reprise::summarize_steps;
use reprise_examples::book_trip::{TripRequest, book_trip};
use reprise_testkit::{assert_each_step_recorded_once, completed_steps, memory_engine};

fn trip(hotel: &str) -> TripRequest {
    TripRequest {
        traveler: "Ada".into(),
        destination: "Lisbon".into(),
        hotel: hotel.into(),
    }
}

#[tokio::test]
async fn a_transient_flight_failure_is_retried_and_the_trip_is_booked() {
    let engine = memory_engine(|b| b).unwrap();
    let id = engine.start(&book_trip, trip("Casa Azul")).await.unwrap();
    let execution = engine.drive(&id).await.unwrap();
    let RunOutcome::Completed(itinerary) = execution.outcome else {
        panic!("{:?}", execution.outcome)
    };
    assert_eq!(itinerary["flight"], "FL-LISBON-2");
    assert_eq!(itinerary["hotel"], "HT-CASA-AZUL");
    let events = engine.store().events(&id).await.unwrap();
    let steps = summarize_steps(&events);
    let flight = steps.iter().find(|s| s.id == "reserve-flight#0").unwrap();
    assert_eq!(flight.attempts, 2);
    assert!(
        events
            .iter()
            .any(|e| e.event.kind == EventKind::StepRetrying)
    );
    assert_each_step_recorded_once(&events);
}

#[tokio::test]
async fn a_permanent_hotel_failure_is_compensated_by_canceling_the_flight() {
    let engine = memory_engine(|b| b).unwrap();
    let id = engine
        .start(&book_trip, trip("Overbooked Inn"))
        .await
        .unwrap();
    let RunOutcome::Failed(error) = engine.drive(&id).await.unwrap().outcome else {
        panic!()
    };
    assert!(error.message.contains("the flight was canceled"), "{error}");
    let events = engine.store().events(&id).await.unwrap();
    assert_eq!(
        completed_steps(&events),
        ["reserve-flight#0", "cancel-flight#0"]
    );
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event.kind == EventKind::StepFailed)
        .filter_map(|e| e.event.correlation_id.clone())
        .collect();
    assert_eq!(
        failed,
        ["reserve-hotel#0"],
        "no_rooms is permanent: failed once, not retried"
    );
    assert_eq!(engine.get_run(&id).await.unwrap().status, RunStatus::Failed);
}
