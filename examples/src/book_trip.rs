//! `book-trip`: reserve a flight (retrying a transient failure), then a hotel; when the
//! hotel fails for good, cancel the flight with a recorded compensating step (a saga).
//!
//! ```text
//! cargo run -q -p reprise-examples -- workflows run book-trip \
//!     --input '{"traveler":"Ada","destination":"Lisbon","hotel":"Casa Azul"}'
//! cargo run -q -p reprise-examples -- workflows run book-trip \
//!     --input '{"traveler":"Ada","destination":"Lisbon","hotel":"Overbooked Inn"}'
//! ```

use reprise::prelude::*;

/// A trip to book.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TripRequest {
    /// Who travels.
    pub traveler: String,
    /// Where to.
    pub destination: String,
    /// Which hotel. `"Overbooked Inn"` is always full.
    pub hotel: String,
}

/// A confirmed reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    /// The confirmation code.
    pub confirmation: String,
}

/// A booked trip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Itinerary {
    /// The flight's confirmation.
    pub flight: String,
    /// The hotel's confirmation.
    pub hotel: String,
}

/// Reserves a flight. The airline's API times out on the first attempt of every booking
/// (a transient failure), so this shows a recorded retry.
#[action(retries = 3, backoff = "100ms", timeout = "10s")]
pub async fn reserve_flight(input: TripRequest, cx: ActionCtx) -> Result<Reservation, ActionError> {
    if cx.attempt() == 1 {
        return Err(ActionError::transient("the airline API timed out"));
    }
    crate::effects::record(&cx)?;
    Ok(Reservation {
        confirmation: format!("FL-{}-{}", input.destination.to_uppercase(), cx.attempt()),
    })
}

/// Reserves a hotel room. `"Overbooked Inn"` is always full: a permanent failure.
#[action(retries = 3, backoff = "100ms")]
pub async fn reserve_hotel(input: TripRequest, cx: ActionCtx) -> Result<Reservation, ActionError> {
    if input.hotel == "Overbooked Inn" {
        return Err(ActionError::new(
            "no_rooms",
            format!("{} has no rooms left", input.hotel),
            false,
        ));
    }
    crate::effects::record(&cx)?;
    Ok(Reservation {
        confirmation: format!("HT-{}", input.hotel.replace(' ', "-").to_uppercase()),
    })
}

/// Cancels a flight reservation (the compensation of `reserve-flight`).
#[action(retries = 5, backoff = "100ms")]
pub async fn cancel_flight(input: Reservation, cx: ActionCtx) -> Result<(), ActionError> {
    crate::effects::record(&cx)?;
    eprintln!("canceled flight {}", input.confirmation);
    Ok(())
}

/// Books a flight and a hotel, or neither.
#[workflow(slug = "book-trip", max_attempts = 1)]
pub async fn book_trip(input: TripRequest) -> Result<Itinerary, WorkflowError> {
    let flight = reserve_flight.run(input.clone()).await?;
    match reserve_hotel.run(input).await {
        Ok(hotel) => Ok(Itinerary {
            flight: flight.confirmation,
            hotel: hotel.confirmation,
        }),
        Err(error) => {
            cancel_flight.run(flight).await?;
            Err(WorkflowError::permanent(format!(
                "the hotel could not be booked ({}); the flight was canceled",
                error.message
            )))
        }
    }
}
