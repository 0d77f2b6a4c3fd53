# The production image: the imageextract command and every Python package it runs
# (tests/e2e/test_production_image.py builds a wheel from exactly the paths copied here).
FROM python:3.11.14-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY cli cli
COPY core core
COPY db db
COPY extraction extraction
COPY imageextract imageextract
COPY migrations migrations
COPY worker worker
RUN pip install --no-cache-dir . \
    && useradd --create-home imageextract && mkdir -p /var/lib/imageextract \
    && chown imageextract /var/lib/imageextract
USER imageextract
ENV IMAGEEXTRACT_DATA_DIR=/var/lib/imageextract
EXPOSE 8000
CMD ["imageextract", "api", "--host", "0.0.0.0", "--port", "8000"]
