-- Where a chunk is when its document has no printed pages ("slide 3", "sheet Sales, rows
-- 2-41", "chapter 2: The Harbour", "message 4: Re: numbers"), and how sure the OCR engine was
-- when the chunk's text was read from a page image (NULL: the text came from a text layer).
ALTER TABLE chunks ADD COLUMN location text;
ALTER TABLE chunks ADD COLUMN ocr_confidence real;
