/* redis_sink */
