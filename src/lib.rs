//! weft facade (filled in below).
